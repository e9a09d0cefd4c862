"""Privilege separation: an unprivileged network worker (``net``, locked down by ``lockdown``) asks a
privileged monitor (``monitor``) over one socket (``link``) for what only the monitor may do."""
