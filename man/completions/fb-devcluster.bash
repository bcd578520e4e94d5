_fb__devcluster() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="fb__devcluster"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        fb__devcluster)
            opts="-h -V --nodes --replicas --port --data-dir --demo --seed-from --demo-shard-bytes --dataframes --auth-token --read-token --expired-token --degraded-after --active-query --tls-cert --tls-key --tls-client-ca --fault --cluster-name --keep-schema-timestamps --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --nodes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --replicas)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --data-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --seed-from)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --demo-shard-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dataframes)
                    COMPREPLY=($(compgen -W "enabled disabled" -- "${cur}"))
                    return 0
                    ;;
                --auth-token)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --read-token)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --expired-token)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --degraded-after)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --active-query)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --tls-cert)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --tls-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --tls-client-ca)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --fault)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cluster-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _fb__devcluster -o nosort -o bashdefault -o default fb-devcluster
else
    complete -F _fb__devcluster -o bashdefault -o default fb-devcluster
fi
