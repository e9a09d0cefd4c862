"""Charlotte's side: the sessions index and the queries over it.

::

    STATE/audit/*.jsonl ──catch_up──► STATE/index.sqlite (derived; delete it to rebuild)
                                          │
        gateway sessions list/show ◄──────┤ query.py
        gateway sessions replay/export ◄──┘ replay.py, export.py (recordings + records)
"""
