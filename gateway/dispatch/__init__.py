"""The OpenSSH front door: ``command="gateway dispatch --principal NAME"`` in authorized_keys.

::

    sshd (restrict, pty?, from=, expiry-time=) ─► gateway dispatch --principal NAME
        SSH_ORIGINAL_COMMAND "ACTION TARGET ARGS..."  ─► the same Session as `serve`
        stdin/stdout/stderr (sshd's pty or pipes)     ─► stdio.StdioProcess (the channel)
        SSH_CONNECTION                                 ─► the peer, for `from` grants
        the same audit chain (flock) and recordings in the same state directory
"""
