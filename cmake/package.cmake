# `cmake --install` and the Debian package (CPack, DEB generator).
#
#   cmake --install build [--prefix /usr/local]   binary, man pages, systemd unit,
#                                                  sysusers.d entry, bash completion,
#                                                  examples in /etc/migrelay, docs
#   cpack --config build/CPackConfig.cmake         migrelay_VERSION_ARCH.deb (prefix /usr)
#
# The example configuration goes to /etc/migrelay whatever the prefix: that
# is where `migrelay serve` and the unit look. Everything else follows the
# prefix; systemd, sysusers.d and bash-completion also search /usr/local.
include(GNUInstallDirs)

install(TARGETS migrelay RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES docs/man/migrelay.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES docs/man/migrelay-serve.conf.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES contrib/migrelay.bash-completion DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
	RENAME migrelay)
install(FILES contrib/migrelay.sysusers DESTINATION lib/sysusers.d RENAME migrelay.conf)
install(FILES contrib/serve.conf.example DESTINATION /etc/migrelay)
install(FILES contrib/serve.env DESTINATION /etc/migrelay RENAME serve.env.example)
install(FILES README.md SECURITY.md docs/PROTOCOL.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES contrib/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME README.systemd.md)

# The unit names the binary by its installed path, which is known only at
# install time (CPack installs with the prefix /usr, a plain install with
# CMAKE_INSTALL_PREFIX): rewrite ExecStart then.
install(CODE "
	file(READ \"${CMAKE_SOURCE_DIR}/contrib/migrelay-serve.service\" mr_unit)
	string(REPLACE \"/usr/local/bin/migrelay\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/migrelay\" mr_unit \"\${mr_unit}\")
	string(MAKE_C_IDENTIFIER \"\${CMAKE_INSTALL_PREFIX}\" mr_p)
	file(WRITE \"${CMAKE_BINARY_DIR}/install-unit/\${mr_p}/migrelay-serve.service\" \"\${mr_unit}\")
	file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\" TYPE FILE
		FILES \"${CMAKE_BINARY_DIR}/install-unit/\${mr_p}/migrelay-serve.service\")
")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME migrelay)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "migrelay maintainers <maintainers@migrelay.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "transport gateway for QEMU live migration: one port, TLS 1.3, parallel connections")
# The long description; CPack puts the summary above it and indents it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Two gateways carry a guest's RAM and device state, multifd channels and
disk (NBD mirror) traffic from a source host to a destination host over one
TCP port, mutually authenticated and encrypted with TLS 1.3, striped over
parallel connections, optionally zstd-compressed, and verified end to end.
Includes the migrelay-serve systemd service (not enabled on install).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: from the ELF's libraries (dpkg-shlibdeps), not a list kept by hand.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-system-x86 | qemu-system, systemd")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
	${CMAKE_SOURCE_DIR}/contrib/debian/conffiles ${CMAKE_SOURCE_DIR}/contrib/debian/postinst
	${CMAKE_SOURCE_DIR}/contrib/debian/prerm ${CMAKE_SOURCE_DIR}/contrib/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Only what the install rules above name: no test binaries, no static libraries.
set(CPACK_SOURCE_IGNORE_FILES "/build.*/;/\\\\.git/")
include(CPack)
