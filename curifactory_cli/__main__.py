"""`python -m curifactory_cli` is `curi`."""

from curifactory_cli.cli import main

if __name__ == "__main__":
    main()
