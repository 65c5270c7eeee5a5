"""`python -m gradcheck_cli`: exactly what the `gradcheck` program does."""

from gradcheck_cli.entry import main

if __name__ == "__main__":
    main()
