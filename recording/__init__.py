"""Recording: the recorder as a hidden subscriber of the media plan (docs/recording.md)."""
