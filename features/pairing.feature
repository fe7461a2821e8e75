# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: DM pairing: a stranger gets a code, the owner approves it
  With imessage.dmPolicy "pairing" (the default), a DM from someone who is neither in
  imessage.allowFrom nor approved gets one message with an 8-character pairing code, its
  sender id and the command that approves it; the message itself never reaches the
  assistant. The owner approves the code with `imsg-gateway pairing approve <CODE>` while
  the gateway runs, and the sender's next message is answered. A code is valid for one hour
  from when it was sent; at most three requests wait at a time.

  The gateway's clock is its own, so expiry is shown by ageing the request in the
  scenario's state database: these scenarios run against real imsg unchanged.

  Background:
    Given the config says:
      """
      { imessage: { dmPolicy: "pairing", allowFrom: [] } }
      """

  Scenario: A stranger gets a code once, and the assistant never sees the message
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When "+12015550111" sends "hello? anyone?" in the DM
    Then the gateway replies nothing else in the DM within 2 seconds
    When the operator runs "imsg-gateway pairing list"
    Then the command exits 0
    And the command says "<code>"
    And the command says "+12015550111"

  Scenario: An approved sender is answered from the next message on, without a restart
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing approve <code>"
    Then the command exits 0
    And the command says "Approved iMessage sender +12015550111"
    When "+12015550111" sends "can you hear me now?" in the DM
    Then the gateway replies "echo: can you hear me now?" in the DM
    When the operator runs "imsg-gateway pairing approved"
    Then the command says "+12015550111"

  Scenario: Commands typed as in Clawdbot work, and codes match in any case
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing list --provider imessage"
    Then the command says "<code>"
    When the operator runs "imsg-gateway pairing approve imessage <code in lower case>"
    Then the command exits 0
    When "+12015550111" sends "thanks" in the DM
    Then the gateway replies "echo: thanks" in the DM

  Scenario: At most three requests wait; a fourth stranger gets no code and no request
    Given a DM chat with "+12015550111"
    And another DM chat with "+12015550112"
    And another DM chat with "+12015550113"
    And another DM chat with "+12015550114"
    When "+12015550111" sends "one" in the DM with "+12015550111"
    Then the gateway replies with a pairing code in the DM with "+12015550111"
    When "+12015550112" sends "two" in the DM with "+12015550112"
    Then the gateway replies with a pairing code in the DM with "+12015550112"
    When "+12015550113" sends "three" in the DM with "+12015550113"
    Then the gateway replies with a pairing code in the DM with "+12015550113"
    When "+12015550114" sends "four" in the DM with "+12015550114"
    Then the gateway replies nothing in the DM with "+12015550114" within 2 seconds
    And the gateway's log says "3 pairing requests are already pending, so +12015550114 gets no code"
    When the operator runs "imsg-gateway pairing list"
    Then the command does not say "+12015550114"

  Scenario: A code expires one hour after it was sent; the next message gets a new one
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the pairing request of "+12015550111" is 61 minutes old
    And the operator runs "imsg-gateway pairing approve <code>"
    Then the command exits 1
    And the command says "expired"
    When "+12015550111" sends "still there?" in the DM
    Then the gateway replies with a new pairing code in the DM
    When the operator runs "imsg-gateway pairing approve <code>"
    Then the command exits 0

  Scenario: A code is still good just before the hour is up
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the pairing request of "+12015550111" is 59 minutes old
    And the operator runs "imsg-gateway pairing approve <code>"
    Then the command exits 0

  Scenario: A rejected sender hears nothing more, and the code cannot be approved
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "let me in" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing reject <code>"
    Then the command exits 0
    When "+12015550111" sends "please?" in the DM
    Then the gateway replies nothing else in the DM within 2 seconds
    When the operator runs "imsg-gateway pairing approve <code>"
    Then the command exits 1
    And the command says "rejected"

  Scenario: A revoked sender is back to pairing
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing approve <code>"
    And "+12015550111" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When the operator runs "imsg-gateway pairing revoke 201-555-0111"
    Then the command exits 0
    When "+12015550111" sends "hello again" in the DM
    Then the gateway replies with a new pairing code in the DM

  Scenario: --notify tells the approved sender, through the running gateway's imsg
    Given a DM chat with "+12015550111"
    When "+12015550111" sends "hi there" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing approve <code> --notify"
    Then the command exits 0
    And the command says "Notified +12015550111"
    And the gateway replies "✅ You are approved: this assistant will answer your messages from now on." in the DM

  Scenario: Unknown codes fail with exit code 1, bad usage with 2
    Given the gateway is running
    When the operator runs "imsg-gateway pairing approve ZZZZ2345"
    Then the command exits 1
    And the command says "no pairing request has the code ZZZZ2345"
    When the operator runs "imsg-gateway pairing approve"
    Then the command exits 2
    When the operator runs "imsg-gateway pairing approve telegram ABCD2345"
    Then the command exits 2
    And the command says "iMessage senders only"
    When the operator runs "imsg-gateway pairing revoke +12015550199"
    Then the command exits 1
