from ociregistry.cli import main

raise SystemExit(main())
