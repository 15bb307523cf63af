from probnets.cli import main

raise SystemExit(main())
