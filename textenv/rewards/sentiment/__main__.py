from textenv.cli import cli
from textenv.rewards.sentiment.train import main

cli(main)
