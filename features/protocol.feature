# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: The gateway speaks both imsg protocol levels
  imsg 0.14 and later speak protocol v1 (an `initialize` handshake, strict parameters);
  older imsg speaks the legacy surface and answers `initialize` with "Method not found".
  The gateway probes with `initialize` and falls back, and a conversation then works the
  same on either.

  # fake-only: a real imsg has exactly one protocol level; fake-imsg can play both.
  @fake-only
  Scenario Outline: A DM conversation over protocol <protocol>
    Given fake-imsg speaks protocol "<protocol>"
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When "+12015550101" sends "how are you?" in the DM
    Then the gateway replies "echo: how are you?" in the DM
    And the gateway replies nothing else in the DM
    And the gateway asked imsg for "initialize" first
    And imsg refused none of the gateway's requests

    Examples:
      | protocol |
      | v1       |
      | legacy   |

  # fake-only: see above.
  @fake-only
  Scenario: Over the legacy protocol the gateway uses only legacy methods
    Given fake-imsg speaks protocol "legacy"
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    And the gateway never asked imsg for "messages.after"
    And imsg refused none of the gateway's requests

  Scenario: Against the imsg under test, no request is refused
    Given a DM chat with "+12015550101"
    And a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When "+12015550101" sends "hello" in the DM
    And "+12015550102" sends "hello all" in the group
    Then the gateway replies "echo: hello" in the DM
    And the gateway replies "echo: hello all" in the group
    And imsg refused none of the gateway's requests
