"""chanmusic package."""
