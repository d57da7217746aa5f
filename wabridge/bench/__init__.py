"""``wabridge bench``: open-loop load on the running stack, measured from Meta's side to Genesys's.

``plan`` decides what is sent and when (pure), ``load`` sends it on the clock, ``genesys_sim``
reads back what reached the Genesys simulator, ``accounting`` compares the two (pure), ``latency``
holds the percentiles, ``processes`` samples CPU and memory, ``report`` prints, ``run`` ties a run
(and ``--find-max``) together, ``state_load`` loads the State API, ``cli`` is the command.
"""
