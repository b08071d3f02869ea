"""The recommendation as files a user deploys: chosen by the report's own rule, retrained
as the final stage tested it, exported in every format, and measured (stage `export`)."""
