"""The real-browser test. A package, so that its conftest.py is imported as
`browser.conftest` and does not replace `conftest` (tests/conftest.py) in sys.modules."""
