# SPDX-License-Identifier: MIT
# bash completion for phxctl: commands, options, and the connections and
# topics the running phxd holds (asked with phxctl --json status).

_phxctl_status_field() {
	# $1: the field ("name" of connections, "topic" of topics); $2: socket or ""
	local json
	json=$(phxctl ${2:+-s "$2"} -t 1000 --json status 2>/dev/null) || return 0
	printf '%s\n' "$json" | grep -o "\"$1\":\"[^\"]*\"" | cut -d'"' -f4
}

_phxctl() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local commands="status join leave push subscribe events presence reload check metrics outbox"
	local global="-s --socket -C --conn -j --json -q --quiet -t --timeout -V --version -h --help"
	local i cmd="" cmdpos=0 sock="" nargs=0

	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-s | --socket) sock=${COMP_WORDS[i + 1]}; ((i++)) ;;
		-C | --conn | -t | --timeout | -n | --count | -e | --event) ((i++)) ;;
		-*) ;;
		*) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; cmdpos=$i; else ((nargs++)); fi ;;
		esac
	done
	case $prev in
	-s | --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-C | --conn) COMPREPLY=($(compgen -W "$(_phxctl_status_field name "$sock")" -- "$cur")); return ;;
	-t | --timeout | -n | --count | -e | --event) return ;;
	esac
	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi
	local opts=""
	case $cmd in
	push) opts="--await --binary --durable -l --lines --timeout" ;;
	subscribe) opts="-e --event -n --count -r --raw -f --follow --join --timeout" ;;
	events) opts="-n --count -f --follow --timeout" ;;
	metrics) opts="--openmetrics" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
		return
	fi
	case $cmd in
	join | leave | push | subscribe | presence)
		if [ "$nargs" -eq 0 ]; then
			COMPREPLY=($(compgen -W "$(_phxctl_status_field topic "$sock")" -- "$cur"))
		fi
		;;
	outbox)
		if [ "$nargs" -eq 0 ]; then
			COMPREPLY=($(compgen -W "list retry drop" -- "$cur"))
		fi
		;;
	esac
}
complete -F _phxctl phxctl
