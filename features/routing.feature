# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: Replies go back to the chat they answer
  The gateway answers every admitted message in the chat it came from, addressing the
  chat by its chat_id. Direct messages from anyone share the assistant's main session;
  each group chat is a session of its own, keyed "imessage:group:<chat_id>", so what is
  said in one group never leaks into another group or into a DM.

  These scenarios run with open DMs and groups that need no mention, and with the built-in
  echo agent, which answers "echo: <text>".

  Scenario: A DM is answered in the same DM, by its chat_id
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    And that reply was addressed by chat_id

  Scenario: A group message is answered in the group, by its chat_id
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When "+12015550102" sends "who is cooking tonight?" in the group
    Then the gateway replies "echo: who is cooking tonight?" in the group
    And that reply was addressed by chat_id

  Scenario: A DM from an email address is answered in that DM
    Given a DM chat with "ann@example.com"
    When "ann@example.com" sends "hi, it's Ann" in the DM
    Then the gateway replies "echo: hi, it's Ann" in the DM
    And that reply was addressed by chat_id

  Scenario: Consecutive messages in a DM are answered in order
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "one" in the DM
    And "+12015550101" sends "two" in the DM
    And "+12015550101" sends "three" in the DM
    Then the gateway replies "echo: one" in the DM
    And the gateway replies "echo: two" in the DM
    And the gateway replies "echo: three" in the DM
    And the gateway replies nothing else in the DM

  Scenario: Two groups stay isolated
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    And a group chat "Work" with "+12015550101", "+12015550104" and "+12015550105"
    When "+12015550104" sends "standup in five" in "Work"
    Then the gateway replies "echo: standup in five" in "Work"
    And the gateway replies nothing in "Family" within 2 seconds
    When "+12015550103" sends "dinner at seven" in "Family"
    Then the gateway replies "echo: dinner at seven" in "Family"
    And the gateway replies nothing else in "Work"

  Scenario: A group reply never goes to a member's DM
    Given a DM chat with "+12015550101"
    And a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When "+12015550101" sends "ping from the group" in the group
    Then the gateway replies "echo: ping from the group" in the group
    And the gateway replies nothing in the DM within 2 seconds

  Scenario: A DM reply never goes to a group the sender is in
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    And a DM chat with "+12015550101"
    When "+12015550101" sends "just between us" in the DM
    Then the gateway replies "echo: just between us" in the DM
    And the gateway replies nothing in the group within 2 seconds

  Scenario: DMs from different people share the main session
    Given the assistant records every envelope it is given
    And a DM chat with "+12015550101"
    And another DM chat with "+12015550102"
    When "+12015550101" sends "hi from Ann" in the DM with "+12015550101"
    Then the gateway replies "echo: hi from Ann" in the DM with "+12015550101"
    And the session of that reply is "main"
    When "+12015550102" sends "hi from Bob" in the DM with "+12015550102"
    Then the gateway replies "echo: hi from Bob" in the DM with "+12015550102"
    And the session of that reply is "main"

  Scenario: Each group has its own session, keyed by its chat_id
    Given the assistant records every envelope it is given
    And a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    And a group chat "Work" with "+12015550101", "+12015550104" and "+12015550105"
    When "+12015550102" sends "family thing" in "Family"
    Then the gateway replies "echo: family thing" in "Family"
    And the session of that reply is "imessage:group:<chat_id>"
    When "+12015550104" sends "work thing" in "Work"
    Then the gateway replies "echo: work thing" in "Work"
    And the session of that reply is "imessage:group:<chat_id>"
