"""``python -m forgetflow.cli``: the same as the ``forgetflow`` console script."""

from forgetflow.cli.app import main

if __name__ == "__main__":
    main()
