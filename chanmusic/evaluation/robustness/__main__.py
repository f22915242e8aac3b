"""``python -m chanmusic.evaluation.robustness`` = ``chanmusic robustness``."""
from chanmusic.evaluation.robustness.command import main

main()
