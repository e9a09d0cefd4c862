"""`python -m gateway`: the same as the `gateway` console script."""

from gateway.entry import main

main()
