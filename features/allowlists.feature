# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: Who may talk to the assistant: DM policies, allowlists and group policies
  imessage.dmPolicy decides DMs: "pairing" (the default; strangers get a code), "allowlist"
  (only imessage.allowFrom and approved senders), "open" (anyone; allowFrom must then
  include "*") and "disabled". allowFrom entries are phone numbers in any common format,
  emails in any case, or chat selectors such as "chat_id:12". imessage.groupPolicy decides
  groups: "open" (the default), "allowlist" (only imessage.groupAllowFrom: a handle admits
  that person in any group, "chat_id:N" everyone in that group) and "disabled". A non-empty
  imessage.groups map lists the groups that are answered at all. dmPolicy is never
  consulted for groups. Whatever is not answered is logged with the setting that would
  change it.

  Scenario Outline: Phone numbers written differently match one allowFrom entry
    Given the config says:
      """
      { imessage: { dmPolicy: "allowlist", allowFrom: ["<entry>"] } }
      """
    And a DM chat with "+12015550121"
    When "+12015550121" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM

    Examples:
      | entry             |
      | +1 (201) 555-0121 |
      | 201-555-0121      |
      | 2015550121        |
      | +12015550121      |

  Scenario: allowlist: someone not listed is not answered and gets no code
    Given the config says:
      """
      { imessage: { dmPolicy: "allowlist", allowFrom: ["+12015550121"] } }
      """
    And a DM chat with "+12015550122"
    When "+12015550122" sends "hello" in the DM
    Then the gateway replies nothing in the DM within 2 seconds
    And the gateway's log says "+12015550122 is not in imessage.allowFrom"

  Scenario: Email entries match whatever the case
    Given the config says:
      """
      { imessage: { dmPolicy: "allowlist", allowFrom: ["Ann@Example.COM"] } }
      """
    And a DM chat with "ann@example.com"
    When "ann@example.com" sends "hi, it's Ann" in the DM
    Then the gateway replies "echo: hi, it's Ann" in the DM

  Scenario: A chat_id entry admits that chat
    Given a DM chat with "+12015550122"
    And "+12015550122" already said "earlier" in the DM
    And the config says:
      """
      { imessage: { dmPolicy: "allowlist", allowFrom: ["chat_id:<chat_id of the DM>"] } }
      """
    When "+12015550122" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM

  Scenario: open answers anyone
    Given the config says:
      """
      { imessage: { dmPolicy: "open", allowFrom: ["*"] } }
      """
    And a DM chat with "+12015550123"
    When "+12015550123" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM

  Scenario: open without "*" in allowFrom is refused by config check
    Given the config says:
      """
      { imessage: { dmPolicy: "open", allowFrom: ["+12015550121"] } }
      """
    When the operator runs "imsg-gateway config check"
    Then the command exits 2
    And the command says "imessage.dmPolicy: \"open\" requires imessage.allowFrom to include \"*\""

  Scenario: An allowFrom entry that is no handle is warned about by key path
    Given the config says:
      """
      { imessage: { dmPolicy: "allowlist", allowFrom: ["+12015550121", "grandma"] } }
      """
    When the operator runs "imsg-gateway config check"
    Then the command exits 0
    And the command says "warning: imessage.allowFrom[1]: \"grandma\" is neither a phone number"

  Scenario: disabled answers no DM, not even an allowed sender
    Given the config says:
      """
      { imessage: { dmPolicy: "disabled", allowFrom: ["*"] } }
      """
    And a DM chat with "+12015550121"
    When "+12015550121" sends "hello" in the DM
    Then the gateway replies nothing in the DM within 2 seconds
    And the gateway's log says "DMs are disabled"

  Scenario: Group allowlist: a handle entry admits that person in any group
    Given the config says:
      """
      { imessage: { groupPolicy: "allowlist", groupAllowFrom: ["+12015550131"],
                    groups: { "*": { requireMention: false } } } }
      """
    And a group chat "Family" with "+12015550131", "+12015550132" and "+12015550133"
    When "+12015550132" sends "not me" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    When "+12015550131" sends "me" in "Family"
    Then the gateway replies "echo: me" in "Family"

  Scenario: Group allowlist: a chat_id entry admits everyone in that group only
    Given a group chat "Family" with "+12015550131", "+12015550132" and "+12015550133"
    And a group chat "Work" with "+12015550131", "+12015550134" and "+12015550135"
    And "+12015550132" already said "earlier" in "Family"
    And "+12015550134" already said "earlier" in "Work"
    And the config says:
      """
      { imessage: { groupPolicy: "allowlist", groupAllowFrom: ["chat_id:<chat_id of "Family">"],
                    groups: { "*": { requireMention: false } } } }
      """
    When "+12015550132" sends "dinner?" in "Family"
    Then the gateway replies "echo: dinner?" in "Family"
    When "+12015550134" sends "standup?" in "Work"
    Then the gateway replies nothing in "Work" within 2 seconds
    And the gateway's log says "is not in imessage.groupAllowFrom"

  Scenario: The groups map lists the groups that are answered at all
    Given a group chat "Family" with "+12015550131", "+12015550132" and "+12015550133"
    And a group chat "Work" with "+12015550131", "+12015550134" and "+12015550135"
    And "+12015550132" already said "earlier" in "Family"
    And the config says:
      """
      { imessage: { groupPolicy: "open",
                    groups: { "<chat_id of "Family">": { requireMention: false } } } }
      """
    When "+12015550134" sends "standup?" in "Work"
    Then the gateway replies nothing in "Work" within 2 seconds
    And the gateway's log says "is not in imessage.groups"
    When "+12015550132" sends "dinner?" in "Family"
    Then the gateway replies "echo: dinner?" in "Family"

  Scenario: groupPolicy disabled answers no group, whatever the DM policy
    Given the config says:
      """
      { imessage: { dmPolicy: "open", allowFrom: ["*"], groupPolicy: "disabled",
                    groups: { "*": { requireMention: false } } } }
      """
    And a group chat "Family" with "+12015550131", "+12015550132" and "+12015550133"
    When "+12015550131" sends "hello all" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    And the gateway's log says "group messages are disabled"

  Scenario: A pairing approval admits DMs only, not groups
    Given the config says:
      """
      { imessage: { dmPolicy: "pairing", allowFrom: [], groupPolicy: "allowlist",
                    groupAllowFrom: ["+12015550199"], groups: { "*": { requireMention: false } } } }
      """
    And a DM chat with "+12015550131"
    And a group chat "Family" with "+12015550131", "+12015550132" and "+12015550133"
    When "+12015550131" sends "hi" in the DM
    Then the gateway replies with a pairing code in the DM
    When the operator runs "imsg-gateway pairing approve <code>"
    And "+12015550131" sends "hello all" in "Family"
    Then the gateway replies nothing in "Family" within 2 seconds
    When "+12015550131" sends "and me?" in the DM
    Then the gateway replies "echo: and me?" in the DM
