"""``python -m esarm.default_model``: which model esarm uses when none is given, and the sample speech file."""

from . import SAMPLE_SPEECH, describe_default_model

print(describe_default_model())
print(f"sample speech: {SAMPLE_SPEECH}")
print(f"try: esarm animate {SAMPLE_SPEECH} --out a.csv")
