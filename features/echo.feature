# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: The gateway does not answer itself, its owner, or reactions
  Messages writes every message sent from this Mac or from the owner's other devices into
  chat.db too, and imsg reports those rows like any other. The gateway must not answer
  them: not the rows marked "from me", not the rows that mirror what the gateway has just
  sent, and not tapbacks. Each scenario ends with an ordinary message that is answered, so
  "not answered" is checked after the gateway has demonstrably moved past the ignored row.

  Scenario: Messages I send from my phone are not answered
    Given a DM chat with "+12015550101"
    When I send "note to self" from my phone in the DM
    And "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    And the gateway replies nothing else in the DM

  Scenario: Messages I send from my phone into a group are not answered
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When I send "I'll bring dessert" from my phone in the group
    And "+12015550103" sends "great" in the group
    Then the gateway replies "echo: great" in the group
    And the gateway replies nothing else in the group

  Scenario: The gateway's own replies are not answered
    # fake-imsg writes each sent message into the world as a from-me row, as Messages does.
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "first" in the DM
    Then the gateway replies "echo: first" in the DM
    When "+12015550101" sends "second" in the DM
    Then the gateway replies "echo: second" in the DM
    And the gateway replies nothing else in the DM

  Scenario: An incoming copy of the gateway's reply is not answered
    # Some setups report a sent message a second time as an incoming row with the same
    # text. Written straight into the world, so this runs against real imsg too.
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When Messages reports the gateway's last reply again as an incoming message from "+12015550101"
    And "+12015550101" sends "after the mirror" in the DM
    Then the gateway replies "echo: after the mirror" in the DM
    And the gateway replies nothing else in the DM

  # fake-only: the mirror row is produced by fake-imsg's mirror_echo fault; a real Mac
  # produces it only under conditions a test cannot arrange.
  @fake-only
  Scenario: A mirror row with the same text as a sent message is not answered
    Given fake-imsg mirrors every message it sends back as an incoming row
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When "+12015550101" sends "still there?" in the DM
    Then the gateway replies "echo: still there?" in the DM
    And the gateway replies nothing else in the DM

  # fake-only: as above, with the mirror row pointing at the sent message by reply_to_guid.
  @fake-only
  Scenario: A mirror row that replies to a sent message is not answered
    Given fake-imsg mirrors every message it sends back as an incoming reply to it
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When "+12015550101" sends "still there?" in the DM
    Then the gateway replies "echo: still there?" in the DM
    And the gateway replies nothing else in the DM

  Scenario: Reactions are not answered
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "good morning" in the DM
    Then the gateway replies "echo: good morning" in the DM
    When "+12015550101" reacts "like" to the last message
    And "+12015550101" sends "coffee?" in the DM
    Then the gateway replies "echo: coffee?" in the DM
    And the gateway replies nothing else in the DM

  Scenario: Reactions in a group are not answered
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When "+12015550101" sends "photo from the trip" in the group
    Then the gateway replies "echo: photo from the trip" in the group
    When "+12015550102" reacts "love" to the last message
    And "+12015550103" reacts "laugh" to the last message
    And "+12015550102" sends "more please" in the group
    Then the gateway replies "echo: more please" in the group
    And the gateway replies nothing else in the group
