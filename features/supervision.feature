# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: The gateway survives imsg, and itself, going away
  imsg is a child process of the gateway. When it dies, the gateway starts it again and
  resubscribes from its durable cursor: a message that arrived while imsg was down is
  answered once, and nothing answered before is answered again. A line on imsg's stdout
  that is not JSON is logged and skipped. The same holds when the gateway itself is
  stopped and started: it resumes where it left off.

  # fake-only: the suite can only find and kill the imsg child through fake-imsg's pid file.
  @fake-only
  Scenario: The imsg child is killed mid-conversation
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "before the crash" in the DM
    Then the gateway replies "echo: before the crash" in the DM
    When the imsg child is killed
    And "+12015550101" sends "while imsg was down" in the DM
    Then imsg has been restarted
    And the gateway replies "echo: while imsg was down" in the DM
    And the gateway replies nothing else in the DM within 2 seconds
    And the gateway is still running

  # fake-only: as above.
  @fake-only
  Scenario: A killed child in a group conversation loses nothing
    Given a group chat "Family" with "+12015550101", "+12015550102" and "+12015550103"
    When "+12015550101" sends "one" in the group
    Then the gateway replies "echo: one" in the group
    When the imsg child is killed
    And "+12015550102" sends "two" in the group
    And "+12015550103" sends "three" in the group
    Then imsg has been restarted
    And the gateway replies "echo: two" in the group
    And the gateway replies "echo: three" in the group
    And the gateway replies nothing else in the group within 2 seconds

  # fake-only: garbage on stdout is a fake-imsg fault; a real imsg writes only JSON there.
  @fake-only
  Scenario: A garbage line on imsg's stdout is survived
    Given fake-imsg writes a garbage line to stdout after 2 requests
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    Then the gateway replies "echo: hello" in the DM
    When "+12015550101" sends "still alive?" in the DM
    Then the gateway replies "echo: still alive?" in the DM
    And the gateway replies nothing else in the DM
    And the gateway is still running

  # fake-only: duplicate notifications are a fake-imsg fault; a real imsg produces them only
  # in races a test cannot arrange.
  @fake-only
  Scenario: A message reported twice is answered once
    # imsg's watch delivers at least once; the gateway's journal of handled GUIDs dedupes.
    Given fake-imsg reports every new message twice
    And a DM chat with "+12015550101"
    When "+12015550101" sends "hello" in the DM
    And "+12015550101" sends "hello again" in the DM
    Then the gateway replies "echo: hello" in the DM
    And the gateway replies "echo: hello again" in the DM
    And the gateway replies nothing else in the DM

  Scenario: A message that arrives while the gateway is stopped is answered when it starts
    Given a DM chat with "+12015550101"
    When "+12015550101" sends "before the restart" in the DM
    Then the gateway replies "echo: before the restart" in the DM
    When the gateway is stopped
    And "+12015550101" sends "while the gateway was stopped" in the DM
    And the gateway is started again
    Then the gateway replies "echo: while the gateway was stopped" in the DM
    And the gateway replies nothing else in the DM
