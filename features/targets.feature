Feature: Where a message goes: send targets
  `imsg-gateway send --to TARGET` (and every reply) addresses a chat by chat_id:N
  (preferred), chat_guid:G or chat_identifier:X, or a person directly by phone number or
  email, optionally after imessage:, sms: or auto:, which pick the service. Prefixes are
  case-insensitive and have aliases (chat:, chatid:, guid:, chatident:). A direct send
  without a service prefix uses imessage.service; every send carries imessage.region for
  numbers written without a country code. `--dry-run --json` prints the `send` params
  without sending anything, and needs no imsg.

  Scenario Outline: Each target form, as the send params imsg receives
    Given the config says:
      """
      { imessage: { service: "imessage", region: "GB" } }
      """
    When the operator runs "imsg-gateway send --to <target> --dry-run --json hi"
    Then the command prints the send params:
      """
      [{<key>: <value>, "text": "hi", "service": "<service>", "region": "GB"}]
      """

    Examples:
      | target                  | key               | value                 | service  |
      | chat_id:123             | "chat_id"         | 123                   | imessage |
      | chat:456                | "chat_id"         | 456                   | imessage |
      | CHATID:7                | "chat_id"         | 7                     | imessage |
      | chat_guid:iMessage;+;c1 | "chat_guid"       | "iMessage;+;c1"       | imessage |
      | guid:iMessage;-;+1555   | "chat_guid"       | "iMessage;-;+1555"    | imessage |
      | chat_identifier:chat99  | "chat_identifier" | "chat99"              | imessage |
      | ChatIdent:chat99        | "chat_identifier" | "chat99"              | imessage |
      | imessage:+12015550101   | "to"              | "+12015550101"        | imessage |
      | SMS:+12015550101        | "to"              | "+12015550101"        | sms      |
      | auto:ann@example.com    | "to"              | "ann@example.com"     | auto     |
      | 02079460018             | "to"              | "02079460018"         | imessage |
      | ann@example.com         | "to"              | "ann@example.com"     | imessage |
      | sms:chat_id:5           | "chat_id"         | 5                     | imessage |

  Scenario Outline: A bad target is refused with its error, and nothing is sent
    When the operator runs "imsg-gateway send --to <target> --dry-run hi"
    Then the command exits 2
    And the command says "<error>"

    Examples:
      | target        | error                                                    |
      | chat_id:abc   | Invalid chat_id: "abc"                                 |
      | chat_id:0     | Invalid chat_id: "0"                                   |
      | chat_guid:    | chat_guid is required                                    |
      | chatident:    | chat_identifier is required                              |
      | sms:          | sms: target is required                                  |
      | grandma       | not a phone number, an email address or a chat target: "grandma" |
      | imessage:bob  | not a phone number, an email address or a chat target: "imessage:bob" |

  Scenario: Nothing to send is a usage error
    When the operator runs "imsg-gateway send --to chat_id:1 --dry-run"
    Then the command exits 2
    And the command says "nothing to send"

  Scenario: A dry run shows every message of a long text before it goes out
    Given the config says:
      """
      { imessage: { textChunkLimit: 12 }, messages: { responsePrefix: "[bot]" } }
      """
    When the operator runs "imsg-gateway send --to chat_id:3 --dry-run --json one-two-three-four"
    Then the command prints the send params:
      """
      [{"chat_id": 3, "text": "[bot]", "service": "auto", "region": "US"},
       {"chat_id": 3, "text": "one-two-thre", "service": "auto", "region": "US"},
       {"chat_id": 3, "text": "e-four", "service": "auto", "region": "US"}]
      """
