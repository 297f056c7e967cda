"""``python -m lib.synthetic OUT_DIR --profile small --seed 0``: see lib.synthetic.folder."""

from lib.synthetic.cli import main

main()
