"""The forced-command door's launcher: ``python -S /path/to/gateway/door.py dispatch ...``.

``-S`` skips site-packages start-up (about 15 ms, paid on every connection);
this file puts the package's own parent directory on ``sys.path`` instead.
The fast path needs nothing else; when it cannot answer, ``site.main()``
brings site-packages back and the full command line takes over.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gateway.entry import main

    main()
