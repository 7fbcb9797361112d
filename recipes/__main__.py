"""`python -m recipes VERB ...`, so that `accelerate launch -m recipes train ...` works."""

from recipes.cli import main

if __name__ == "__main__":
    main()
