# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fb_manifest_global_optspecs
    string join \n format= live host= auth-token= auth-token-file= concurrency= retry-period= header-timeout= max-rate= tls.ca-certificate= tls.certificate= tls.key= tls.skip-verify progress= q/quiet v/verbose h/help V/version
end

function __fish_fb_manifest_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fb_manifest_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fb_manifest_using_subcommand
    set -l cmd (__fish_fb_manifest_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l format -d 'Output format' -r -f -a "json\t'MANIFEST.json, byte for byte as fb-export writes it'
sha256sum\t'`SHA256  PATH` lines for `sha256sum -c` inside an extracted backup'"
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l host -d 'Any node of the cluster: host[:port], with http:// (default) or https://' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l auth-token -d 'Bearer token for a cluster with auth on (prefer FBKIT_AUTH_TOKEN or --auth-token-file: argv is visible in ps)' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l auth-token-file -d 'Read the bearer token from this file (surrounding whitespace ignored)' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l concurrency -d 'Files moved at once; output order and bytes do not depend on it' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l retry-period -d 'How long one idempotent request is retried (5xx, resets) before the next replica, and how long the owners of a file are asked again while the cluster still lists one as up (frozen, just died)' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l header-timeout -d 'Longest wait for a node\'s response headers, and between two pieces of a body' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l max-rate -d 'Cap on the bytes per second of file data, all transfers together (whatever --concurrency is): 50M = 50 MB/s, 20MiB = 20 MiB/s, 500k, or plain bytes. fb-import counts every copy it sends (an entry for three replicas counts three times); fb-export and fb-manifest count what they read. Default: no limit' -r
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l tls.ca-certificate -d 'PEM file of the CA certificate(s) that signed the cluster\'s certificates' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l tls.certificate -d 'PEM client certificate, for clusters that require one (mTLS)' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l tls.key -d 'PEM private key of the client certificate' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l progress -d 'Progress on stderr' -r -f -a "auto\t'A progress line when stderr is a terminal'
always\t'Always a progress line on stderr'
never\t'No progress'
json\t'One JSON object per line on stderr per event: started, file, retry, failover, warning, request (with -vv), and last finished (exit_code 0, files, bytes, seconds, manifest_sha256, totals) or failed (exit_code, error). started.files counts the entries a success writes for certain; optional_files the dataframes written only where the cluster has one; finished.files = required_files (= started.files) + optional_files (those found). MANIFEST.json is not counted'"
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l live -d 'Compute the manifest of the live cluster named by --host (nothing is stored)'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -l tls.skip-verify -d 'Do not verify the server\'s certificate (unsafe; off by default)'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -s q -l quiet -d 'No progress and no summary line; errors are still printed'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -s v -l verbose -d 'More detail on stderr: -v retries and failovers (warnings are always shown); -vv also every request and every file'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -s V -l version -d 'Print version'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -a "diff" -d 'Compare two backups, manifests, directories or live clusters'
complete -c fb-manifest -n "__fish_fb_manifest_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l host -d 'Any node of the cluster: host[:port], with http:// (default) or https://' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l auth-token -d 'Bearer token for a cluster with auth on (prefer FBKIT_AUTH_TOKEN or --auth-token-file: argv is visible in ps)' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l auth-token-file -d 'Read the bearer token from this file (surrounding whitespace ignored)' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l concurrency -d 'Files moved at once; output order and bytes do not depend on it' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l retry-period -d 'How long one idempotent request is retried (5xx, resets) before the next replica, and how long the owners of a file are asked again while the cluster still lists one as up (frozen, just died)' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l header-timeout -d 'Longest wait for a node\'s response headers, and between two pieces of a body' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l max-rate -d 'Cap on the bytes per second of file data, all transfers together (whatever --concurrency is): 50M = 50 MB/s, 20MiB = 20 MiB/s, 500k, or plain bytes. fb-import counts every copy it sends (an entry for three replicas counts three times); fb-export and fb-manifest count what they read. Default: no limit' -r
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l tls.ca-certificate -d 'PEM file of the CA certificate(s) that signed the cluster\'s certificates' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l tls.certificate -d 'PEM client certificate, for clusters that require one (mTLS)' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l tls.key -d 'PEM private key of the client certificate' -r -F
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l progress -d 'Progress on stderr' -r -f -a "auto\t'A progress line when stderr is a terminal'
always\t'Always a progress line on stderr'
never\t'No progress'
json\t'One JSON object per line on stderr per event: started, file, retry, failover, warning, request (with -vv), and last finished (exit_code 0, files, bytes, seconds, manifest_sha256, totals) or failed (exit_code, error). started.files counts the entries a success writes for certain; optional_files the dataframes written only where the cluster has one; finished.files = required_files (= started.files) + optional_files (those found). MANIFEST.json is not counted'"
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l json -d 'Machine-readable output'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l content -d 'Compare changed entries by what they hold, not by their bytes: schema without the createdAt/updatedAt stamps and owners (and an int or decimal bound of 0 read as unset, as upstream\'s POST /schema does; numbers compared as written), key stores and idalloc by their keys and values; shards and dataframes stay compared by bytes (a restore keeps them). For checking a restore against its backup: a FeatureBase restore rewrites the schema and the key stores. Needs the data of both sides (not a manifest file); holds a schema, key store or idalloc in memory while reading it, up to 64 MiB (larger ones are compared by bytes)'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l census -d 'Compare what the two sides answer instead of their entries: records and keys per index, every row\'s bits per view, count, sum, min and max of every int, decimal and timestamp field. An archive or directory is decoded; a cluster URL is asked with PQL queries (its files are not read). Exit 1 names every figure that differs'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -l tls.skip-verify -d 'Do not verify the server\'s certificate (unsafe; off by default)'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -s q -l quiet -d 'No progress and no summary line; errors are still printed'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -s v -l verbose -d 'More detail on stderr: -v retries and failovers (warnings are always shown); -vv also every request and every file'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand help; and not __fish_seen_subcommand_from diff help" -f -a "diff" -d 'Compare two backups, manifests, directories or live clusters'
complete -c fb-manifest -n "__fish_fb_manifest_using_subcommand help; and not __fish_seen_subcommand_from diff help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
