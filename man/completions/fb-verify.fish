complete -c fb-verify -l manifest -d 'Check against this manifest (stored apart) instead of the stream\'s own' -r -F
complete -c fb-verify -l top -d 'Rows shown per field view in the census text (--json always has all of them)' -r
complete -c fb-verify -l progress -d 'Progress on stderr' -r -f -a "auto\t'A progress line when stderr is a terminal'
always\t'Always a progress line on stderr'
never\t'No progress'
json\t'One JSON object per line on stderr per event: started, file, retry, failover, warning, request (with -vv), and last finished (exit_code 0, files, bytes, seconds, manifest_sha256, totals) or failed (exit_code, error). started.files counts the entries a success writes for certain; optional_files the dataframes written only where the cluster has one; finished.files = required_files (= started.files) + optional_files (those found). MANIFEST.json is not counted'"
complete -c fb-verify -l deep -d 'Also check each file\'s inner format'
complete -c fb-verify -l census -d 'Also decode every shard and key store and print what the backup answers (in --json: "census")'
complete -c fb-verify -l json -d 'Write a machine-readable report to stdout: {"verdict": "ok" or "failed", "exit_code", "error", "entries", "census"}'
complete -c fb-verify -s q -l quiet -d 'No progress and no summary line; errors are still printed'
complete -c fb-verify -s v -l verbose -d 'More detail on stderr: -v retries and failovers (warnings are always shown); -vv also every request and every file'
complete -c fb-verify -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-verify -s V -l version -d 'Print version'
