"""`make bench`: how many waiting clients each server holds, and how fast one event reaches them.

    python -m bench                 # everything, about 5 minutes, Nchan included if installed
    python -m bench --quick         # small sizes, a minute or two
    python -m bench --only fanout   # one scenario (fanout, latency, memory, rpe, throughput)

The kit's servers and Nchan (nginx, the production reference) are driven in the same run by the
same load client (`helpers.loadclient`, which notebook 05 uses too): raw asyncio, one
TCP connection per simulated subscriber, HTTP/1.1 written by hand. Results go to
`results/bench-<date>.json` and `.md`; docs/benchmarks.md explains how to read them.
"""
