"""The bottom layer: facts and I/O every other layer may import (errors, file writing, safe checkpoint loading,
electrode tables, constants, the offline resampler). It imports nothing else of the project."""
