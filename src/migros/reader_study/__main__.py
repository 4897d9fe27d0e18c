import sys

from migros.reader_study.cli import main

sys.exit(main())
