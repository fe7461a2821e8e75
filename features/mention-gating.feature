# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: In groups the assistant answers when it is mentioned
  iMessage has no mention metadata, so a mention is a match of one of
  routing.groupChat.mentionPatterns (regular expressions, case-insensitive, matched after
  zero-width and direction characters are removed). A group requires a mention unless
  imessage.groups."<chat_id>".requireMention, or else imessage.groups."*".requireMention,
  says false. An unmentioned message is not answered but kept (imessage.historyLimit per
  chat, 20 by default) and handed to the assistant as context with the next mention.
  With no mention pattern at all, nothing counts as a mention, so groups that require one
  are not answered; config check warns about it.

  Background:
    Given the assistant records every envelope it is given

  Scenario: Mentioned is answered, unmentioned is kept as context
    Given the config says:
      """
      { imessage: { groups: {} }, routing: { groupChat: { mentionPatterns: ["@clawd"] } } }
      """
    And a group chat "Family" with "+12015550141", "+12015550142" and "+12015550143"
    When "+12015550141" sends "who is cooking tonight?" in "Family"
    And "+12015550142" sends "not me" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    And the gateway's log says "requires a mention (set imessage.groups."
    When "+12015550143" sends "@clawd can you decide?" in "Family"
    Then the gateway replies "echo: @clawd can you decide?" in "Family"
    And that reply's envelope says the assistant was mentioned
    And that reply's envelope carries the context "who is cooking tonight?" and "not me"
    When "+12015550141" sends "@clawd thanks" in "Family"
    Then the gateway replies "echo: @clawd thanks" in "Family"
    And that reply's envelope carries no context

  Scenario: Case and invisible characters do not hide a mention
    Given the config says:
      """
      { imessage: { groups: {} }, routing: { groupChat: { mentionPatterns: ["@clawd"] } } }
      """
    And a group chat "Family" with "+12015550141", "+12015550142" and "+12015550143"
    When "+12015550141" sends "@CLAWD what time is it?" in "Family"
    Then the gateway replies "echo: @CLAWD what time is it?" in "Family"
    When "+12015550142" sends "@cl​awd and the date?" in "Family"
    Then the gateway replies "echo: @cl​awd and the date?" in "Family"

  Scenario: Two groups with different settings
    Given a group chat "Family" with "+12015550141", "+12015550142" and "+12015550143"
    And a group chat "Work" with "+12015550141", "+12015550144" and "+12015550145"
    And "+12015550144" already said "earlier" in "Work"
    And the config says:
      """
      { imessage: { groups: { "*": { requireMention: true },
                              "<chat_id of "Work">": { requireMention: false } } },
        routing: { groupChat: { mentionPatterns: ["\\bclawd\\b"] } } }
      """
    When "+12015550141" sends "dinner at seven" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    When "+12015550144" sends "standup in five" in "Work"
    Then the gateway replies "echo: standup in five" in "Work"
    And that reply's envelope says the assistant was not mentioned
    When "+12015550142" sends "clawd, dinner?" in "Family"
    Then the gateway replies "echo: clawd, dinner?" in "Family"
    And that reply's envelope carries the context "dinner at seven"

  Scenario: "*" turns mention gating off for every group
    Given the config says:
      """
      { imessage: { groups: { "*": { requireMention: false } } },
        routing: { groupChat: { mentionPatterns: ["@clawd"] } } }
      """
    And a group chat "Family" with "+12015550141", "+12015550142" and "+12015550143"
    When "+12015550141" sends "anyone there?" in "Family"
    Then the gateway replies "echo: anyone there?" in "Family"

  Scenario: No mention patterns: groups that require a mention are not answered, and logged
    Given the config says:
      """
      { imessage: { groups: {} }, routing: { groupChat: { mentionPatterns: [] } } }
      """
    And a group chat "Family" with "+12015550141", "+12015550142" and "+12015550143"
    When "+12015550141" sends "@clawd hello?" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    And the gateway's log says "mentionPatterns is empty, so nothing counts as one"
    When the operator runs "imsg-gateway config check"
    Then the command says "warning: imessage: groups require a mention by default but routing.groupChat.mentionPatterns is empty"

  Scenario: An invalid mention pattern is a config error naming it and its index
    Given the config says:
      """
      { routing: { groupChat: { mentionPatterns: ["@clawd", "(unclosed"] } } }
      """
    When the operator runs "imsg-gateway config check"
    Then the command exits 2
    And the command says "routing.groupChat.mentionPatterns[1]: invalid regular expression \"(unclosed\""
