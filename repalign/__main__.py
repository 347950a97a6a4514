from repalign.cli import run

run()
