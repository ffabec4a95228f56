"""``python -m security`` (``make security``): every stage, then ``N passed, N failed``; non-zero on any failure."""

from security.runner import main

raise SystemExit(main())
