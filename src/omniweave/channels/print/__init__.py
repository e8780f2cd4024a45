"""Direct mail: letters (letter.py) queued into batches and printed as a PDF + CSV (adapter.py, render.py),
delivered on their drop date (service.py); a fake mail house (fake.py)."""

from omniweave.channels.print.adapter import PrintBatch, PrintChannel
from omniweave.channels.print.letter import Letter, letter_of

__all__ = ["Letter", "PrintBatch", "PrintChannel", "letter_of"]
