complete -c fb-devcluster -l nodes -d 'Number of nodes' -r
complete -c fb-devcluster -l replicas -d 'Copies of each partition (capped at the node count)' -r
complete -c fb-devcluster -l port -d 'Port of node 0 (node i uses PORT+i); 0 picks free ports' -r
complete -c fb-devcluster -l data-dir -d 'Keep node data in DIR/node<i>/ (default: a temporary directory removed on exit)' -r -F
complete -c fb-devcluster -l seed-from -d 'Load an extracted backup (`featurebase backup -o DIR`, or `tar -xf` of an fb-export or backuptar stream) into the nodes, placed as a restore would place it, unless the data directory already holds a schema. The files are served byte for byte' -r -F
complete -c fb-devcluster -l demo-shard-bytes -d 'Pad each demo shard file to about N bytes (streamed to disk)' -r
complete -c fb-devcluster -l dataframes -d 'Dataframe GETs: served, or 400 "Dataframe is disabled" like a default upstream' -r -f -a "enabled\t'Serve dataframe files'
disabled\t'Answer 400 "Dataframe is disabled"'"
complete -c fb-devcluster -l auth-token -d 'Require "Authorization: Bearer TOKEN" (401/403 like upstream otherwise)' -r
complete -c fb-devcluster -l tls-cert -d 'Serve HTTPS with this PEM certificate chain (needs --tls-key)' -r -F
complete -c fb-devcluster -l tls-key -d 'PEM private key of --tls-cert' -r -F
complete -c fb-devcluster -l tls-client-ca -d 'Require client certificates signed by this PEM CA (mTLS)' -r -F
complete -c fb-devcluster -l fault -d 'Install a fault at start (repeatable; see FAULT SPECS below)' -r
complete -c fb-devcluster -l cluster-name -d 'Cluster name reported by /status' -r
complete -c fb-devcluster -l demo -d 'Seed a small demo data set (keyed and unkeyed indexes, key translation, ID allocation, one dataframe) unless the data directory already holds a schema'
complete -c fb-devcluster -l keep-schema-timestamps -d 'Keep the createdAt/updatedAt stamps a POST /schema carries (default: stamp indexes and fields with the current time, as upstream does, so a restored cluster serves another schema than its backup\'s; `fb-manifest diff --content` sees through that)'
complete -c fb-devcluster -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-devcluster -s V -l version -d 'Print version'
