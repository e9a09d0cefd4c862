"""The forced-command door's launcher: ``python -S /path/to/gateway/door.py dispatch ...``.

``-S`` skips site-packages start-up (about 15 ms, paid on every connection);
this file puts the package's own parent directory on ``sys.path`` instead.
The thin client (``dispatch.client``: hand the session to ``gateway serve``
over its door socket) needs nothing else; when no daemon answers,
``site.main()`` brings site-packages back and the in-process door takes over.
"""

import os
import sys

if __name__ == "__main__":
    # os.path, not pathlib: importing pathlib costs about 10 ms, on every door connection.
    package_parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # noqa: PTH120
    sys.path.insert(0, package_parent)
    from gateway.entry import main

    main()
