"""crowdtune: align language models with feedback from a crowd.

The packages follow the pipeline: ``datasets`` feeds every stage, ``crowd`` runs Crowd-SFT rounds
and credits contributors, ``reports`` turns results into self-contained HTML, ``cli`` is the
command line. See DESIGN.md in the shared folder for the map.
"""

__version__ = "0.1.0"
