# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: Long replies arrive whole, in order, and readable on a phone
  A reply longer than imessage.textChunkLimit (4000 characters by default, per account) is
  sent as several messages, each after the previous one was acknowledged. A break prefers
  the last newline within the limit, then the last space, and never splits a grapheme
  cluster (a family emoji, a flag, a letter with its accents). messages.responsePrefix goes
  on the first message only. chunkMode "newline" packs whole paragraphs into each message.

  These scenarios use the echo agent, which answers "echo: <text>".

  Scenario: A 4000-character reply is one message
    Given a DM chat with "+12015550151"
    When "+12015550151" sends a text of 3994 characters in the DM
    Then the gateway replies in 1 message in the DM
    And each of those messages is at most 4000 characters

  Scenario: A 4001-character reply is two messages, in order
    Given a DM chat with "+12015550151"
    When "+12015550151" sends a text of 3995 characters in the DM
    Then the gateway replies in 2 messages in the DM
    And each of those messages is at most 4000 characters
    And those messages, in order, are "echo: " followed by the text sent

  Scenario: A 9000-character reply with paragraphs breaks between paragraphs
    Given a DM chat with "+12015550151"
    When "+12015550151" sends 12 paragraphs of 700 characters in the DM
    Then the gateway replies in 3 messages in the DM
    And each of those messages is at most 4000 characters
    And every break between those messages falls between paragraphs
    And those messages, in order, are "echo: " followed by the text sent

  Scenario: The response prefix is on the first message only
    Given the config says:
      """
      { messages: { responsePrefix: "[bot]" } }
      """
    And a DM chat with "+12015550151"
    When "+12015550151" sends a text of 5000 characters in the DM
    Then the gateway replies in 2 messages in the DM
    And only the first of those messages starts with "[bot] "

  Scenario: A family emoji and a flag stay whole at a break
    Given the config says:
      """
      { imessage: { textChunkLimit: 10 } }
      """
    And a DM chat with "+12015550151"
    When "+12015550151" sends "abcdef👨‍👩‍👧🇯🇵" in the DM
    Then the gateway replies in 3 messages in the DM
    And those messages are "echo:", "abcdef" and "👨‍👩‍👧🇯🇵"

  Scenario: chunkMode newline packs whole paragraphs
    Given the config says:
      """
      { imessage: { textChunkLimit: 20, chunkMode: "newline" } }
      """
    And a DM chat with "+12015550151"
    When "+12015550151" sends "one\n\ntwo\n\nthree four five\n\nsix" in the DM
    Then the gateway replies in 2 messages in the DM
    And those messages are "echo: one\n\ntwo" and "three four five\n\nsix"

  Scenario: Each account has its own limit
    Given the config says:
      """
      { imessage: { accounts: { home: {}, work: { enabled: false, textChunkLimit: 25 } } } }
      """
    When the operator runs "imsg-gateway send --account work --to chat_id:7 --dry-run --json lorem-ipsum-dolor-sit-amet-consectetur"
    Then the command prints the send params:
      """
      [{"chat_id": 7, "text": "lorem-ipsum-dolor-sit-ame", "service": "auto", "region": "US"},
       {"chat_id": 7, "text": "t-consectetur", "service": "auto", "region": "US"}]
      """
    When the operator runs "imsg-gateway send --account home --to chat_id:7 --dry-run --json lorem-ipsum-dolor-sit-amet-consectetur"
    Then the command prints the send params:
      """
      [{"chat_id": 7, "text": "lorem-ipsum-dolor-sit-amet-consectetur", "service": "auto", "region": "US"}]
      """
