import os

# Notebooks shrink their long live runs when they run unattended (helpers.headless()).
# nbval starts each kernel from this process, so the kernel inherits this variable.
os.environ.setdefault("POLLING_LAB_HEADLESS", "1")
