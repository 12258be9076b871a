from extproc.cli import main

if __name__ == "__main__":  # not when a spawned scan worker imports this module as __mp_main__
    raise SystemExit(main())
