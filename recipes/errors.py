"""The one exception for bad input: the command line prints its message and exits with 2."""


class RecipeError(Exception):
    """A problem with what the user asked for, stated in one line with the fix."""
