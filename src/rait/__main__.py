"""``python -m rait`` (also ``accelerate launch -m rait``) runs the CLI."""

from rait.cli import main

main()
