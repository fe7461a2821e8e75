# Handles are fictional (NANP 555-01xx): a run against real imsg really sends to them.
Feature: Attachments both ways
  The gateway always asks imsg for attachment metadata, so a photo sent without text reaches
  the assistant as "<media:image>" (or audio, video, document, unknown).
  imessage.includeAttachments decides whether the file's path is handed over; a file larger
  than imessage.mediaMaxMb, or missing on the Mac, is described as omitted with the reason.
  An agent may answer with files ({"text": ..., "files": [paths]}): each is sent after the
  text; a file that is too large, missing or not a regular file is not sent, and the chat
  gets a short notice. imsg cannot verify an attachment-only send without its bridge, so
  that send counts as sent, and is never retried.

  Background:
    Given the assistant records every envelope it is given

  Scenario: A photo without text reaches the assistant with its path
    Given the config says:
      """
      { imessage: { includeAttachments: true } }
      """
    And a DM chat with "+12015550161"
    When "+12015550161" sends the file "cat.jpg" of 2000 bytes in the DM
    Then the gateway replies "echo: <media:image>" in the DM
    And that reply's envelope hands over "cat.jpg" as "image/jpeg" at a path that exists

  Scenario: A caption is the text
    Given the config says:
      """
      { imessage: { includeAttachments: true } }
      """
    And a DM chat with "+12015550161"
    When "+12015550161" sends the file "cat.jpg" of 2000 bytes with the caption "look at him" in the DM
    Then the gateway replies "echo: look at him" in the DM

  Scenario: Without includeAttachments the kind is there, the path is not
    Given a DM chat with "+12015550161"
    When "+12015550161" sends the file "cat.jpg" of 2000 bytes in the DM
    Then the gateway replies "echo: <media:image>" in the DM
    And that reply's envelope omits "cat.jpg" because "includeAttachments is false"

  Scenario: A file larger than mediaMaxMb is omitted with its size
    Given the config says:
      """
      { imessage: { includeAttachments: true, mediaMaxMb: 1 } }
      """
    And a DM chat with "+12015550161"
    When "+12015550161" sends the file "video.mov" of 1500000 bytes in the DM
    Then the gateway replies "echo: <media:video>" in the DM
    And that reply's envelope omits "video.mov" because "larger than mediaMaxMb (1500000 bytes > 1 MB)"

  Scenario: A file missing on the Mac is omitted with the reason
    Given the config says:
      """
      { imessage: { includeAttachments: true } }
      """
    And a DM chat with "+12015550161"
    And the gateway is running
    When the gateway is stopped
    And "+12015550161" sends the file "gone.pdf" of 3000 bytes with the caption "see attached" in the DM
    And the Mac's copy of "gone.pdf" is deleted
    And the gateway is started again
    Then the gateway replies "echo: see attached" in the DM
    And that reply's envelope omits "gone.pdf" because "missing on disk, 3000 bytes"

  Scenario: A file from the assistant is sent after its text
    Given a file "report.pdf" of 1000 bytes
    And a DM chat with "+12015550161"
    When "+12015550161" asks for the file "report.pdf" in the DM
    Then the gateway replies "here you go" in the DM
    And the gateway sends the file "report.pdf" in the DM
    And the gateway replies nothing else in the DM

  Scenario: A file larger than mediaMaxMb is not sent, and the chat is told
    Given the config says:
      """
      { imessage: { mediaMaxMb: 1 } }
      """
    And a file "huge.zip" of 2000000 bytes
    And a DM chat with "+12015550161"
    When "+12015550161" asks for the file "huge.zip" in the DM
    Then the gateway replies "here you go" in the DM
    And the gateway's next message in the DM says "a file could not be sent: huge.zip"
    And the gateway replies nothing else in the DM
    And the gateway's log says "larger than imessage.mediaMaxMb (1 MB)"

  Scenario: An attachment-only send imsg cannot verify counts as sent and is not retried
    Given a file "photo.jpg" of 1000 bytes
    And a DM chat with "+12015550161"
    When "+12015550161" asks for only the file "photo.jpg" in the DM
    Then the gateway sends the file "photo.jpg" in the DM
    And the gateway replies nothing else in the DM within 3 seconds
    And imsg was asked to send "photo.jpg" exactly once
    And the gateway's log says "counted as sent, not retried"
