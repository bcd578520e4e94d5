complete -c fb-import -l host -d 'Any node of the cluster: host[:port], with http:// (default) or https://' -r
complete -c fb-import -l auth-token -d 'Bearer token for a cluster with auth on (prefer FBKIT_AUTH_TOKEN or --auth-token-file: argv is visible in ps)' -r
complete -c fb-import -l auth-token-file -d 'Read the bearer token from this file (surrounding whitespace ignored)' -r -F
complete -c fb-import -l concurrency -d 'Files moved at once; output order and bytes do not depend on it' -r
complete -c fb-import -l retry-period -d 'How long one idempotent request is retried (5xx, resets) before the next replica, and how long the owners of a file are asked again while the cluster still lists one as up (frozen, just died)' -r
complete -c fb-import -l header-timeout -d 'Longest wait for a node\'s response headers, and between two pieces of a body' -r
complete -c fb-import -l max-rate -d 'Cap on the bytes per second of file data, all transfers together (whatever --concurrency is): 50M = 50 MB/s, 20MiB = 20 MiB/s, 500k, or plain bytes. fb-import counts every copy it sends (an entry for three replicas counts three times); fb-export and fb-manifest count what they read. Default: no limit' -r
complete -c fb-import -l tls.ca-certificate -d 'PEM file of the CA certificate(s) that signed the cluster\'s certificates' -r -F
complete -c fb-import -l tls.certificate -d 'PEM client certificate, for clusters that require one (mTLS)' -r -F
complete -c fb-import -l tls.key -d 'PEM private key of the client certificate' -r -F
complete -c fb-import -s s -l source -d 'Read the backup from FILE (checked whole before anything is sent) instead of stdin' -r -F
complete -c fb-import -l manifest -d 'The manifest, stored apart: every entry is checked before it is committed' -r -F
complete -c fb-import -l progress -d 'Progress on stderr' -r -f -a "auto\t'A progress line when stderr is a terminal'
always\t'Always a progress line on stderr'
never\t'No progress'
json\t'One JSON object per line on stderr per event: started, file, retry, failover, warning, request (with -vv), and last finished (exit_code 0, files, bytes, seconds, manifest_sha256, totals) or failed (exit_code, error). started.files counts the entries a success writes for certain; optional_files the dataframes written only where the cluster has one; finished.files = required_files (= started.files) + optional_files (those found). MANIFEST.json is not counted'"
complete -c fb-import -l tls.skip-verify -d 'Do not verify the server\'s certificate (unsafe; off by default)'
complete -c fb-import -l no-manifest -d 'Accept a stream without MANIFEST.json (featurebase backuptar or backup directory)'
complete -c fb-import -l force -d 'Restore into a cluster that already holds data (its files may be overwritten); the indexes and fields it lacks are created, and one it holds with other options is refused'
complete -c fb-import -l resume -d 'Finish an interrupted restore of this backup: send only the entries the target lacks or holds differently (needs -s FILE); a target whose schema is not the backup\'s is refused'
complete -c fb-import -l dry-run -d 'Read and check everything; send nothing, do not contact the cluster'
complete -c fb-import -s q -l quiet -d 'No progress and no summary line; errors are still printed'
complete -c fb-import -s v -l verbose -d 'More detail on stderr: -v retries and failovers (warnings are always shown); -vv also every request and every file'
complete -c fb-import -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-import -s V -l version -d 'Print version'
