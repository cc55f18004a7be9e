"""Errors the media layer reports to signaling; code and message are safe to show a client."""


class MediaError(Exception):
    """A request to the media layer was refused; nothing was applied.

    Codes: bad_sdp, too_many_slots, codec_unsupported, no_slot, closed, connect_failed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
