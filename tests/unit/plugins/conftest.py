"""Unit tests import the collection as Ansible does: hardway.cloud on the collections path."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
