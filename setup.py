"""Build hook only: all metadata is in setup.cfg.

`sdist` first generates the man pages and bash completion from the argparse parser
(packaging/gen-docs.py, needs argparse-manpage and shtab), so the sdist carries them and
package builds need neither library. Building an sdist from an sdist keeps the shipped ones.
"""

import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join(HERE, "packaging", "generated")


class SdistWithDocs(sdist):
    def run(self):
        gen = os.path.join(HERE, "packaging", "gen-docs.py")
        python = os.environ.get("HPCPOLICY_GEN_PYTHON", sys.executable)
        rc = subprocess.call([python, gen, GENERATED])
        if rc != 0:
            if not os.path.isfile(os.path.join(GENERATED, "man", "hpcpolicy.8")):
                sys.exit("sdist: cannot generate the man pages and bash completion "
                         "(packaging/gen-docs.py failed; HPCPOLICY_GEN_PYTHON names a Python "
                         "with argparse-manpage and shtab)")
            sys.stderr.write("sdist: keeping the man pages and completion already here\n")
        sdist.run(self)


setup(cmdclass={"sdist": SdistWithDocs})
