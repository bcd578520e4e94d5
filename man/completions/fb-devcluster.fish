complete -c fb-devcluster -l nodes -d 'Number of nodes' -r
complete -c fb-devcluster -l replicas -d 'Copies of each partition (capped at the node count)' -r
complete -c fb-devcluster -l port -d 'Port of node 0 (node i uses PORT+i); 0 picks free ports' -r
complete -c fb-devcluster -l data-dir -d 'Keep node data in DIR/node<i>/ (default: a temporary directory removed on exit)' -r -F
complete -c fb-devcluster -l seed-from -d 'Load an extracted backup (`featurebase backup -o DIR`, or `tar -xf` of an fb-export or backuptar stream) into the nodes, placed as a restore would place it, unless the data directory already holds a schema. The files are served byte for byte' -r -F
complete -c fb-devcluster -l demo-shard-bytes -d 'Pad each demo shard file to about N bytes (streamed to disk)' -r
complete -c fb-devcluster -l dataframes -d 'Dataframe GETs: served, or 400 "Dataframe is disabled" like a default upstream' -r -f -a "enabled\t'Serve dataframe files'
disabled\t'Answer 400 "Dataframe is disabled"'"
complete -c fb-devcluster -l auth-token -d 'Require "Authorization: Bearer TOKEN" (401/403 like upstream otherwise); this token has admin rights' -r
complete -c fb-devcluster -l read-token -d 'Also accept TOKEN for a user without admin rights who may read only the listed indexes (repeatable): GET /schema shows only those, their shards and key stores are served, other indexes and admin routes (/info, /queries, POST /schema, restores) answer 403 like upstream' -r
complete -c fb-devcluster -l expired-token -d 'Treat TOKEN as well-formed but expired (repeatable): 403 (401 on internal routes) "authenticating: token is expired: ...", like upstream when the refresh fails' -r
complete -c fb-devcluster -l degraded-after -d 'How long the other nodes keep listing a dead node (down@N, or hang@N on every path) as STARTED and redirecting to it, before /status says DEGRADED (or DOWN) and key stores are refused (404 "... not allowed in state DEGRADED"). Upstream takes about 20s; 0 notices at once. Units: ms, s, m' -r
complete -c fb-devcluster -l active-query -d 'Report a query as running on every node in GET /queries (repeatable), e.g. \'users=Delete(Row(color="red"))\'. Also POST /_fbkit/query?index=INDEX with the PQL as the body, DELETE /_fbkit/query to clear' -r
complete -c fb-devcluster -l tls-cert -d 'Serve HTTPS with this PEM certificate chain (needs --tls-key)' -r -F
complete -c fb-devcluster -l tls-key -d 'PEM private key of --tls-cert' -r -F
complete -c fb-devcluster -l tls-client-ca -d 'Require client certificates signed by this PEM CA (mTLS)' -r -F
complete -c fb-devcluster -l fault -d 'Install a fault at start (repeatable; see FAULT SPECS below)' -r
complete -c fb-devcluster -l cluster-name -d 'Cluster name reported by /status' -r
complete -c fb-devcluster -l demo -d 'Seed a small demo data set (keyed and unkeyed indexes, key translation, ID allocation, one dataframe) unless the data directory already holds a schema'
complete -c fb-devcluster -l keep-schema-timestamps -d 'Keep the createdAt/updatedAt stamps a POST /schema carries (default: stamp indexes and fields with the current time, as upstream does, so a restored cluster serves another schema than its backup\'s; `fb-manifest diff --content` sees through that)'
complete -c fb-devcluster -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fb-devcluster -s V -l version -d 'Print version'
