"""Settings split: ``base`` holds everything; ``local``, ``test`` and ``production`` differ by env vars only."""
