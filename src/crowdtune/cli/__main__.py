"""``python -m crowdtune.cli`` (and ``accelerate launch -m crowdtune.cli``): the command line."""

from crowdtune.cli import app

app()
