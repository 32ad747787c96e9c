from fsdp.cli import main

raise SystemExit(main())
