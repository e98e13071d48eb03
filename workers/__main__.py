"""``python -m workers``: run the worker process (see `workers.main`)."""

from __future__ import annotations

from workers.main import main

if __name__ == "__main__":
    main()
