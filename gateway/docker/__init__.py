"""The Docker Engine API boundary (aiodocker); its errors are translated here.

::

    Engine ── inspect / kill / image_exists / reap      (engine.py)
           ── logs (demultiplexed) / archive (streamed)  (streams.py)
           ── Sidekick: create, attach, wait, start, remove (sidekick.py)
"""

from gateway.docker.engine import ContainerInfo, Engine, valid_name

__all__ = ["ContainerInfo", "Engine", "valid_name"]
